// A VMM with the classic ABI mistakes, for tests that need failing KVM ioctls spread over time (the reference
// guest issues none): KVM_SET_USER_MEMORY_REGION built with a 24-byte struct (the kernel's is 32), so the
// request number encodes the wrong size and the kernel answers ENOTTY; and KVM_CREATE_VCPU with an id far
// beyond KVM's limit (EINVAL). Usage: node abi-mistake-vmm.mjs DIST_DIR ROUNDS INTERVAL_MS
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [dist, rounds = '10', intervalMs = '20'] = process.argv.slice(2);
const lib = (p) => import(pathToFileURL(join(dist, p)).href);
const { open, close, ioctlRaw, O_RDWR, O_CLOEXEC } = await lib('src/ffi/libc.js');
const { io, iow, KVMIO } = await lib('src/kvm/abi/ioc.js');

const KVM_CREATE_VM = io(KVMIO, 0x01);
const KVM_CREATE_VCPU = io(KVMIO, 0x41);
const WRONG_SET_USER_MEMORY_REGION = iow(KVMIO, 0x46, 24);

const kvm = open('/dev/kvm', O_RDWR | O_CLOEXEC);
const vm = ioctlRaw(kvm, KVM_CREATE_VM, 0);
if (vm < 0) throw new Error(`KVM_CREATE_VM failed: ${-vm}`);
const region = Buffer.alloc(24);
let failed = 0;
for (let i = 0; i < Number(rounds); i++) {
  if (ioctlRaw(vm, WRONG_SET_USER_MEMORY_REGION, region) < 0) failed++;
  if (ioctlRaw(vm, KVM_CREATE_VCPU, 1_000_000) < 0) failed++;
  await new Promise((r) => setTimeout(r, Number(intervalMs)));
}
close(vm);
close(kvm);
process.stdout.write(`${JSON.stringify({ pid: process.pid, failed })}\n`);
