// @plugvisor/core/testing: the conformance kit for service authors, the test-only echo
// service that exercises every core path, and a RAM-only machine for core-mechanics tests.
export { checkServiceConformance, type ConformanceOptions } from './conformance.js';
export { createEchoService, ECHO, type EchoOptions, type EchoState } from './echo-service.js';
export { MemoryMachine } from './memory-machine.js';
export type { BenchRow } from './bench.js';
export { rebuildGuestImages, type GuestImageRebuild } from './guest-images.js';
export { withHandler, withSignature } from './variants.js';
export { checkPersistence, type PersistenceCheck, type PersistentComponent } from './persistence.js';
export { echoServiceFactory } from './echo-service.js';
export { createPreemptService, PREEMPT, type PreemptOptions } from './preempt-service.js';
