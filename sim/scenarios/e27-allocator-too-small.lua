-- The workshop's second failure: the allocator was reconfigured to memory_mib 512, so
-- `nitro-cli run-enclave --cpu-count 2 --memory 3072 --eif-path /home/ec2-user/data-processing.eif` passes the
-- 4x rule (2148 MiB) but fails with E27 after "Start allocating memory...", then E39.
return {
  description = "E27: the allocator reserved only 512 MiB of hugepages; run-enclave --memory 3072 asks for more",
  host = { instance_id = "i-0123456789abcdef0", cpus = 4, threads_per_core = 2 },
  allocator_yaml = "---\n# Enclave configuration file.\nmemory_mib: 512\ncpu_count: 2\n",
  images = {
    ["hello:latest"] = { Cmd = { "/bin/hello.sh" }, Shell = true, App = "hello" },
    ["data-processing:latest"] = { Entrypoint = { "/usr/local/bin/data-processing" }, Env = { "PATH=/usr/local/bin:/usr/bin:/bin" },
      Shell = true, App = "custom" },
  },
  eifs = {
    { path = "/usr/share/nitro_enclaves/examples/hello.eif", image = "hello:latest" },
    { path = "/home/ec2-user/data-processing.eif", image = "data-processing:latest", size_mib = 537 },
  },
}
