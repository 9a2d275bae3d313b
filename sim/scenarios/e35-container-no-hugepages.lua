-- nitro-cli run inside a container that does not see the host's hugepages (no hugetlbfs mount, no /dev/hugepages):
-- the allocator's reservation exists on the host, memory "allocation" passes, but filling the regions from the EIF
-- fails and run-enclave ends with E35 "EIF file parsing error ... This might indicate that the required hugepages
-- are not available" (the explain text itself says so), then E39.
return {
  extends = "healthy",
  description = "E35: run-enclave inside a container without the host's hugepages (reading the EIF into enclave memory fails)",
  host = { hugepages_usable = false },
  workload = { { eif = "/home/ec2-user/hello-vsock.eif", memory = 1024, cpu_count = 2, debug = true } },
}
