-- The enclave's memory passes the 4x rule but is too small for the unpacked initramfs: unpacking fails, init prints
-- "Could not open /env file", segfaults, and the kernel panics ("Attempted to kill init!"); run-enclave itself
-- succeeded (the heartbeat came first). Fix: more --memory.
return {
  extends = "healthy",
  description = "Enclave init crashes: 'Could not open /env file' (initramfs does not fit the enclave's memory), kernel panic",
  images = { ["big-app:latest"] = { Entrypoint = { "/init" }, Env = { "VSOCK_PINGPONG_MODE=vsock" }, Shell = false,
    InitramfsMiB = 1800 } },
  eifs = { { path = "/home/ec2-user/big-app.eif", image = "big-app:latest" } },
  workload = { { eif = "/home/ec2-user/big-app.eif", memory = 1024, cpu_count = 2, debug = true } },
}
