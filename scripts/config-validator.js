#!/usr/bin/env node
/**
 * Writes daemon/config/config-schema-validate.generated.ts: the config validator precompiled by ajv
 * (daemon/config/config-validator.ts says why). Run after changing CONFIG_SCHEMA:
 *
 *   npm run build && node scripts/config-validator.js
 *
 * test/daemon/config/config-validator.test.ts fails while the file is not current.
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const { CONFIG_SCHEMA } = require(path.join(ROOT, 'dist/daemon/config/config-schema'));
const { configValidatorSource } = require(path.join(ROOT, 'dist/daemon/config/config-validator-source'));
const out = path.join(ROOT, 'daemon/config/config-schema-validate.generated.ts');
fs.writeFileSync(out, configValidatorSource(CONFIG_SCHEMA));
console.log(`written ${path.relative(ROOT, out)}`);
