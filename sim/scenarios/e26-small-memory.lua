-- The first failure of the Nitro Enclaves workshop's troubleshooting page: the EIF (537 MiB) needs 4 x its size,
-- so `nitro-cli run-enclave --cpu-count 2 --memory 512 --eif-path /home/ec2-user/data-processing.eif` fails with
-- E26 ("the minimum memory should be 2148 MB") before any memory is allocated, then E39.
return {
  description = "E26: a 537 MiB EIF (data-processing.eif) run with --memory 512 needs at least 2148 MiB (the 4x rule)",
  host = { instance_id = "i-0123456789abcdef0", cpus = 4, threads_per_core = 2 },
  allocator_yaml = "---\n# Enclave configuration file.\nmemory_mib: 4096\ncpu_count: 2\n",
  images = {
    ["hello:latest"] = { Cmd = { "/bin/hello.sh" }, Shell = true, App = "hello" },
    ["data-processing:latest"] = { Entrypoint = { "/usr/local/bin/data-processing" }, Env = { "PATH=/usr/local/bin:/usr/bin:/bin" },
      Shell = true, App = "custom" },
  },
  eifs = {
    { path = "/usr/share/nitro_enclaves/examples/hello.eif", image = "hello:latest" },
    { path = "/home/ec2-user/data-processing.eif", image = "data-processing:latest", size_mib = 537 },
  },
  services = { ["nitro-enclaves-vsock-proxy.service"] = { description = "Nitro Enclaves vsock Proxy", state = "active" } },
}
