const test = require('node:test');
const assert = require('node:assert');
const { withTax } = require('../src/price');

test('adds tax', () => {
  assert.strictEqual(withTax(1000, 0.2), 1200);
});
