// Bundles the compiled SDK (dist/) into one browser ES module for the playground page:
// server/static/vendor/kinetoscope-client.js. The output is committed, so the server needs no
// Node at run time; run `npm run build:playground` after changing src/.
import { build } from 'esbuild';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const pkg = path.resolve(here, '..');
const outfile = path.resolve(pkg, '../../server/static/vendor/kinetoscope-client.js');

await build({
  entryPoints: [path.join(pkg, 'dist/index.js')],
  outfile,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2020'],
  charset: 'utf8',
  legalComments: 'none',
  logLevel: 'warning',
  banner: {
    js: [
      '// GENERATED FILE - do not edit. Built from clients/js/src by `npm run build:playground`',
      '// (clients/js/scripts/build-playground.mjs): the kinetoscope-client SDK bundled as one ES module.',
    ].join('\n'),
  },
});
console.log(`wrote ${path.relative(process.cwd(), outfile)}`);
