const test = require('node:test');
const assert = require('node:assert');
test('renders', () => assert.strictEqual(`<p>${1 + 1}</p>`, '<p>2</p>'));
