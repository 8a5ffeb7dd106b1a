// hmacSha256Under() against node:crypto's own HMAC (and RFC 4231's first test case).
import { strict as assert } from 'node:assert';
import { createHmac, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { hmacSha256Under } from '../../../src/util/hmac.js';

test('RFC 4231 test case 1', () => {
  const mac = hmacSha256Under(Buffer.alloc(20, 0x0b));
  assert.equal(
    mac(Buffer.from('Hi There')).toString('hex'),
    'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7',
  );
});

test('equals createHmac for keys up to the block size and any split of the message', () => {
  for (const keyLength of [0, 1, 32, 63, 64]) {
    const key = randomBytes(keyLength);
    const mac = hmacSha256Under(key);
    for (let i = 0; i < 50; i++) {
      const message = randomBytes(i * 7);
      const cut = Math.floor(message.length / 3);
      const expected = createHmac('sha256', key).update(message).digest();
      assert.deepEqual(mac(message), expected);
      assert.deepEqual(mac(message.subarray(0, cut), message.subarray(cut)), expected);
    }
  }
  assert.throws(() => hmacSha256Under(Buffer.alloc(65)), RangeError);
});
