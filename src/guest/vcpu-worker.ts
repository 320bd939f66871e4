/**
 * worker_thread entry: one vCPU per thread (KVM vCPU ioctls should come from the thread that created the
 * vCPU). Loaded as compiled JS from dist/ (see worker-url.ts). Posts exactly one VcpuSessionOutput.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { runVcpuSession, type VcpuSessionInput } from './vcpu-session.js';

const out = runVcpuSession(workerData as VcpuSessionInput);
// Transfer the KVM_RUN columns instead of copying them.
const r = out.log?.runs;
parentPort!.postMessage(out, r ? ([r.t0, r.t1, r.ret, r.fd, r.vcpu].map((a) => a.buffer) as ArrayBuffer[]) : []);
