export { main, Exit } from './main.js';
export { loadBuild, DEFAULT_BUILD, type BuildSpec, type LoadedBuild, type ServiceRef } from './build-file.js';
export { formatAbi } from './commands/abi.js';
export { readVmRecord } from './commands/check.js';
export { serviceAbiMarkdown, ABI_BEGIN, ABI_END } from './abi-markdown.js';
