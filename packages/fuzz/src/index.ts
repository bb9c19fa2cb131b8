export { runFuzz, compareWithRestores, allOptIn, rng, FUZZ_IMAGE, GUESTS_DIR, PARAMS_GPA, PVTIME_GPA, MEM_SIZE, MAX_VCPUS, type FuzzOptions, type FuzzResult } from './harness.js';
