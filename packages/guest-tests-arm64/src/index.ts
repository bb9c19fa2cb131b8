// @plugvisor/guest-tests-arm64: the harness the acceptance tests use to run the aarch64 test
// guest on the arm64 machine with a VM composed from real services.
export * from './harness.js';
