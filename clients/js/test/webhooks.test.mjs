// verifyWebhook: Standard Webhooks signatures, checked against node:crypto's HMAC.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';

import { verifyWebhook, WebhookVerificationError } from '../dist/index.js';

const key = Buffer.from('kinetoscope-test-secret-24');
const secret = 'whsec_' + key.toString('base64');
const body = '{"type":"video.completed","timestamp":"2026-12-03T00:00:00.000+00:00","data":{"id":"video_1"}}';

function signed(id, timestamp, payload) {
  return 'v1,' + createHmac('sha256', key).update(`${id}.${timestamp}.${payload}`).digest('base64');
}

test('a delivery signed with the secret verifies and parses', async () => {
  const headers = new Headers({ 'webhook-id': 'msg_1', 'webhook-timestamp': '1700000000',
    'webhook-signature': 'v1,bm90IGl0 ' + signed('msg_1', 1700000000, body) });
  const event = await verifyWebhook(body, headers, secret, { now: 1700000005 });
  assert.equal(event.type, 'video.completed');
  assert.equal(event.data.id, 'video_1');
  const plain = { 'Webhook-Id': 'msg_1', 'Webhook-Timestamp': '1700000000', 'Webhook-Signature': signed('msg_1', 1700000000, body) };
  assert.equal((await verifyWebhook(new TextEncoder().encode(body), plain, secret, { now: 1700000005 })).type, 'video.completed');
});

test('a changed body, id, old timestamp or missing header is refused', async () => {
  const good = { 'webhook-id': 'msg_1', 'webhook-timestamp': '1700000000', 'webhook-signature': signed('msg_1', 1700000000, body) };
  await assert.rejects(verifyWebhook(body + ' ', good, secret, { now: 1700000005 }), WebhookVerificationError);
  await assert.rejects(verifyWebhook(body, { ...good, 'webhook-id': 'msg_2' }, secret, { now: 1700000005 }), /no signature/);
  await assert.rejects(verifyWebhook(body, good, secret, { now: 1700009999 }), /tolerance/);
  const { 'webhook-signature': _, ...unsigned } = good;
  await assert.rejects(verifyWebhook(body, unsigned, secret, { now: 1700000005 }), /missing header webhook-signature/);
});
