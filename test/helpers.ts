// Test support lives in test/support/; this re-export stays only while test/store.test.ts (owned elsewhere) imports it from here.
export { tempDir } from './support/temp-dir.js';
