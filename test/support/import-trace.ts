/**
 * `node --import dist/test/support/import-trace.js …`: appends every module
 * URL the process resolves to the file in $IMPORT_TRACE_FILE (a test
 * checks which modules a command loads).
 */
import { register } from 'node:module';

register(new URL('./import-trace-hooks.js', import.meta.url));
