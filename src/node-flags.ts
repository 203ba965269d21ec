/**
 * Node's command-line flags the daemon runs with as a service: the systemd
 * unit's `ExecStart` passes them, and so does every test and bench that
 * starts the CLI as a child, so what they measure is what the unit runs.
 *
 * `--max-semi-space-size=8`: V8 sizes the main thread's young generation
 * (two semispaces) by how much survives its collections, up to 16 MB each on
 * 64-bit. Under load the daemon's messages reach that cap within seconds, and
 * the 32 MB it then touches is a fixed cost of the process that the memory
 * bench counts against its streams (about 200 bytes each at 100,000). At 8 MB
 * the daemon holds about 150 bytes less per stream at 100k streams for about
 * 2% more CPU per QoS 0 message (paired runs: README, "Memory per stream");
 * at 4 MB the collector ran four times as often and cost 12%.
 *
 * Only node's command line can size the young generation: V8 reads the flag
 * when it sets up the heap, before any module runs (heap-growth.ts sets the
 * one flag that can still change at run time).
 */
export const SERVICE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=8'];
