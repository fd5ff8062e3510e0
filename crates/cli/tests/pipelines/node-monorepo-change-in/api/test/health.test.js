const test = require('node:test');
const assert = require('node:assert');
test('health', () => assert.ok(true));
