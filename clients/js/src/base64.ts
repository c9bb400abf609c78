/** Base64 both ways (atob/btoa: browsers and Node 16+), for previews' confidence maps and webhook signatures. */

/** Bytes of a base64 string. */
export function decodeBase64(text: string): Uint8Array {
  const binary = atob(text);
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

/** The base64 string of some bytes. */
export function encodeBase64(bytes: ArrayBuffer | Uint8Array): string {
  let binary = '';
  for (const b of bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes)) binary += String.fromCharCode(b);
  return btoa(binary);
}
