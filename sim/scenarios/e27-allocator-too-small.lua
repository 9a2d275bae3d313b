-- The workshop's second failure: the allocator was reconfigured to memory_mib 512, and the operator runs
-- data-processing.eif with --memory 3072: it passes the 4x rule (2148 MiB) but fails with E27 after
-- "Start allocating memory...", then E39.
return {
  extends = "e26-small-memory",
  description = "E27: the allocator reserved only 512 MiB of hugepages; run-enclave --memory 3072 asks for more",
  allocator_yaml = "---\n# Enclave configuration file.\nmemory_mib: 512\ncpu_count: 2\n",
  workload = { { eif = "/home/ec2-user/data-processing.eif", memory = 3072, cpu_count = 2, debug = true } },
}
