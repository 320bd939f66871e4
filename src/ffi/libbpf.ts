/**
 * The libbpf half of the koffi boundary: libbpf.so.1 (Debian 12 ships 1.1.2) bindings, one file per
 * concern under libbpf/ — lib.ts (loading, error convention, handle brands), log.ts (the log hook),
 * object.ts (open, size maps, set rodata, toggle autoload, load, attach, destroy), datasec.ts (an opened
 * object's global variables), probe.ts (feature probes, raw loads, the kernel's id lists), ring.ts (a ring
 * buffer drained through libbpf's callback API, for tests and fallbacks; the fast consumer maps the ring
 * itself, src/ringbuf/). This file is their one public face.
 */
export { libbpfUnavailable } from './libbpf/lib.js';
export type { BpfLinkPtr, BpfMapPtr, BpfObjectPtr, BpfProgramPtr, RingBufferPtr } from './libbpf/lib.js';
export { LibbpfLogLevel, pauseLibbpfLog, setLibbpfLogger, type LibbpfLogger } from './libbpf/log.js';
export {
  attachProgram,
  closeObject,
  destroyLink,
  destroyLinkAsync,
  findMap,
  findProgram,
  linkFd,
  loadObject,
  loadObjectAsync,
  mapFd,
  mapInitialValue,
  mapKeys,
  mapLookup,
  mapMaxEntries,
  mapName,
  mapUpdate,
  numPossibleCpus,
  objectMaps,
  objectPrograms,
  openObjectFile,
  programAutoload,
  programFd,
  programName,
  programSection,
  programType,
  setMapAutocreate,
  setMapInitialValue,
  setMapMaxEntries,
  setProgramAutoload,
} from './libbpf/object.js';
export { datasecVars, type DatasecVar } from './libbpf/datasec.js';
export {
  BPF_ATTACH_TYPE,
  BPF_MAP_TYPE,
  BPF_PROG_TYPE,
  bpfObjectId,
  findVmlinuxBtfId,
  kernelBpfIds,
  linkCreateRaw,
  probeHelper,
  probeMapType,
  probeProgType,
  progLoadRaw,
  type BpfIdKind,
  type ProgLoadOptions,
} from './libbpf/probe.js';
export { ringBufferNew, sampleView, type LibbpfRingBuffer, type RingSample } from './libbpf/ring.js';
