// @plugvisor/guest-tests-xen: real aarch64 Xen guests for svc-xen / svc-evtchn-fifo, their
// harness and test service (also used by svc-evtchn-fifo's bench).
export * from './harness.js';
export * from './service.js';
