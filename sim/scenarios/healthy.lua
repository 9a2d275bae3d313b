-- A healthy parent instance: the baseline the other scenarios change one thing of.
-- Scenario files are plain data (no functions are available while loading). See docs/simulator.md for every key.
return {
  description = "Healthy parent instance: driver loaded, allocator holds 4096 MiB and 2 CPUs, test images and EIFs ready",
  host = {
    instance_id = "i-0123456789abcdef0",
    hostname = "ip-172-31-20-7.ec2.internal",
    cpus = 4,                 -- online vCPUs of the parent (CPU 0 and its sibling 2 stay with the parent)
    threads_per_core = 2,
    memory_mib = 15524,
    nitro_cli_version = "1.4.2",
  },
  allocator_yaml = [[
---
# Enclave configuration file.
#
# How much memory to allocate for enclaves (in MiB).
memory_mib: 4096
#
# How many CPUs to reserve for enclaves.
cpu_count: 2
#
# Alternatively, the exact CPUs to be reserved for the enclave can be explicitly
# configured by using `cpu_pool` (like below), instead of `cpu_count`.
# Note: cpu_count and cpu_pool conflict with each other. Only use exactly one of them.
# Example of reserving CPUs 2, 3, and 6 through 9:
# cpu_pool: 2,3,6-9
]],
  -- Docker-like image configurations (what `docker inspect` shows). Extra simulator keys: Shell (the image has a
  -- working /bin/sh), App (init | vsock-pingpong | hello | busybox-smoke | exits | custom), Console (lines printed
  -- instead), Exits (the command exits at once).
  images = {
    ["hello-enclave:vsock"] = { Entrypoint = { "/init" }, Env = { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      "VSOCK_PINGPONG_MODE=vsock" }, Shell = false },
    ["hello-enclave:basic"] = { Entrypoint = { "/init" }, Env = { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      "VSOCK_PINGPONG_MODE=basic" }, Shell = false },
    -- enclave/Dockerfile.smoke: echo prints its line and exits, so the enclave reboots right after it
    ["busybox-smoke:latest"] = { Entrypoint = { "/bin/echo", "[busybox-smoke] alive" },
      Env = { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" }, Shell = true },
    ["hello:latest"] = { Cmd = { "/bin/hello.sh" }, Env = { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" },
      Shell = true, App = "hello" },
  },
  -- EIFs present on the host (built from the images above; size_mib pads the file to that size, sparse)
  eifs = {
    { path = "/home/ec2-user/hello-vsock.eif", image = "hello-enclave:vsock" },
    { path = "/home/ec2-user/hello-basic.eif", image = "hello-enclave:basic" },
    { path = "/home/ec2-user/busybox-smoke.eif", image = "busybox-smoke:latest" },
    { path = "/home/ec2-user/hello.eif", image = "hello:latest" },
    -- the AWS hello sample shipped by aws-nitro-enclaves-cli-devel (diag10's control run)
    { path = "/usr/share/nitro_enclaves/examples/hello.eif", image = "hello:latest" },
  },
  services = {
    ["nitro-enclaves-vsock-proxy.service"] = { description = "Nitro Enclaves vsock Proxy", state = "active",
      exec = "/usr/bin/vsock-proxy" },
    ["docker.service"] = { description = "Docker Application Container Engine", state = "active", exec = "/usr/bin/dockerd" },
  },
  dmesg = {
    "nitro_enclaves: loading out-of-tree module taints kernel.",
    "nitro_enclaves: Nitro Enclaves driver version 1.0 loaded",
  },
}
