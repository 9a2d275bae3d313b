-- The workload's enclave takes 30 s to send its boot heartbeat (a big ramdisk to unpack, a slow init): on a real host
-- run-enclave returns after 30 s. On the simulated host's advancing clock (docs/simulator.md, "Simulated time") that
-- costs no real time, and every stamp and duration still says 30 s.
return {
  extends = "healthy",
  description = "Slow boot: the workload's enclave sends its heartbeat after 30 s",
  images = {
    ["slow-app:latest"] = { Entrypoint = { "/init" }, Env = { "VSOCK_PINGPONG_MODE=vsock" }, Shell = false,
      BootSeconds = 30 },
  },
  eifs = { { path = "/home/ec2-user/slow-app.eif", image = "slow-app:latest" } },
  workload = { { eif = "/home/ec2-user/slow-app.eif", image = "slow-app:latest", memory = 1024, cpu_count = 2,
    debug = true } },
}
