-- The allocator of 2021 (before aws-nitro-enclaves-cli PR #315) on a host whose NUMA node has only 1 GiB free: it
-- reserves what it can, still logs "Successfully allocated Nitro Enclaves resources: 4096 MiB, 2 CPUs", and the
-- operator's run-enclave --memory 2048 then fails with E27. The hugepage counters tell the truth.
return {
  extends = "healthy",
  description = "Allocator reports success after reserving only 1 GiB of 4096 MiB (NUMA node short, pre-#315 script): E27",
  host = { numa_free_mib = 1024, allocator_script = "2021" },
  workload = { { eif = "/home/ec2-user/hello-vsock.eif", memory = 2048, cpu_count = 2, debug = true } },
}
