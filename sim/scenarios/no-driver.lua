-- The nitro_enclaves driver is not loaded (or the instance was launched without enclave support): there is no
-- /dev/nitro_enclaves and no CPU pool file, the allocator service fails, and run-enclave fails with E19 on the pool
-- file (nitro-cli reads /sys/module/nitro_enclaves/parameters/ne_cpus before it opens the device).
return {
  extends = "healthy",
  description = "E19: no driver (no ne_cpus, no /dev/nitro_enclaves); the allocator service failed",
  host = { driver = false },
  workload = { { eif = "/home/ec2-user/hello-vsock.eif", memory = 1024, cpu_count = 2, debug = true } },
}
