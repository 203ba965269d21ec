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
 * `--initial-old-space-size=64`: a floor of 64 MB under the old generation's
 * limit. heap-growth.ts lets the heap grow only 30% past what the last full
 * collection kept; with a small live heap (about 30 MB at 10,000 streams)
 * that left 8–9 MB between full collections, and a saturated QoS 0 feed
 * promotes messages fast enough to fill it ten times in 100,000 messages
 * (bench e2e: 7–11 major collections; live heap differences as small as which
 * CLI modules were loaded moved the QoS 0 rate by 10%). With the floor, two
 * interleaved pairs: 0 major collections and 63–64k msgs/s at 19.4–19.8 µs
 * of CPU per message, against 51–55k at 23.5–24.9 µs; QoS 1 unchanged. Past
 * 64 MB of live heap (large stream counts) the 30% growth decides again.
 *
 * Only node's command line can size the young generation and the initial old
 * generation: V8 reads these flags when it sets up the heap, before any module
 * runs, and NODE_OPTIONS refuses `--initial-old-space-size` (heap-growth.ts
 * sets the one flag that can still change at run time).
 */
export const SERVICE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=8', '--initial-old-space-size=64'];
