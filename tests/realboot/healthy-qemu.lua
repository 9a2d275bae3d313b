-- The healthy host, with its enclaves booted for real under QEMU's nitro-enclave machine (sim/backend_qemu.lua):
-- the EIFs the simulated `docker build` + `nitro-cli build-enclave` write hold Debian's kernel, nitrodiag-bootstrap
-- and the test image (nitrodiag-init, vsock-pingpong), so diag10 proves build → EIF → boot → init → app → vsock
-- ping → console → bundle for real. tests/realboot/run.sh runs diag10 on it.
return {
  extends = "healthy",
  description = "Healthy parent instance whose enclaves boot for real under QEMU (backend = qemu)",
  backend = "qemu",
}
