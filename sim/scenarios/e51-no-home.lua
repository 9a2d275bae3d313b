-- build-enclave run from AWS SSM (no HOME) or a bare systemd unit: nitro-cli cannot find a folder for its build
-- artifacts and fails with E51 unless HOME or NITRO_CLI_ARTIFACTS is set.
return {
  description = "E51: build-enclave with neither HOME nor NITRO_CLI_ARTIFACTS set (as under AWS SSM RunShellScript)",
  host = { instance_id = "i-0123456789abcdef0", cpus = 4, threads_per_core = 2 },
  allocator_yaml = "---\nmemory_mib: 4096\ncpu_count: 2\n",
  env = { HOME = false, NITRO_CLI_ARTIFACTS = false },   -- false: unset in the environment of the simulated host
  images = {
    ["hello-enclave:vsock"] = { Entrypoint = { "/init" }, Env = { "VSOCK_PINGPONG_MODE=vsock" }, Shell = false },
  },
}
