-- The first failure of the Nitro Enclaves workshop's troubleshooting page: the operator runs data-processing.eif
-- (537 MiB) with --memory 512; the 4x rule needs 2148 MiB, so run-enclave fails with E26 ("the minimum memory should
-- be 2148 MB") before any memory is allocated, then E39. `nitrodiag --sim e26-small-memory diag10` runs that workload.
return {
  extends = "healthy",
  description = "E26: a 537 MiB EIF (data-processing.eif) run with --memory 512 needs at least 2148 MiB (the 4x rule)",
  images = {
    ["data-processing:latest"] = { Entrypoint = { "/usr/local/bin/data-processing" }, Env = { "PATH=/usr/local/bin:/usr/bin:/bin" },
      Shell = true, App = "custom" },
  },
  eifs = { { path = "/home/ec2-user/data-processing.eif", image = "data-processing:latest", size_mib = 537 } },
  -- the operator's workload: /etc/nitrodiag/workload.d/01-data-processing.json (nitro-cli --config format)
  workload = { { eif = "/home/ec2-user/data-processing.eif", memory = 512, cpu_count = 2, debug = true } },
}
