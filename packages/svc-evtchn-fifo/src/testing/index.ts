export { LinuxFifoGuest } from './linux-consumer.js';
