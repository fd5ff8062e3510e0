const test = require('node:test');
const assert = require('node:assert');
test('app', () => assert.deepStrictEqual([1, 2].map((x) => x * 2), [2, 4]));
