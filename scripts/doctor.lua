-- doctor: is this host ready to run enclaves that get keys from KMS? The checks of the old Rust doctor and more,
-- each independent (no fail-fast: every check runs and reports), each failure with a stable code and a remediation.
-- Codes are listed in docs/doctor.md; `nitrodiag --json doctor` is a stable document for monitoring.
local checks = require "nd.checks"

return {
  description = "Check the host is ready for enclaves and KMS: device, allocator, enclaves, IMDSv2, clock, KMS proxy, vsock-proxy",
  categories = { "diagnosis", "canned" },
  args = {
    { name = "min_memory", type = "integer", default = 2048, help = "MiB the allocator should reserve at least" },
    { name = "min_cpus", type = "integer", default = 2, help = "CPUs the allocator should reserve at least" },
    { name = "imds", type = "string", help = "IMDS base URL (default http://169.254.169.254 or $AWS_EC2_METADATA_SERVICE_ENDPOINT)" },
    { name = "region", type = "string", help = "AWS region for the KMS endpoint (default: from IMDS or $AWS_REGION)" },
    { name = "proxy_unit", type = "string", default = "kms-proxy-host", help = "systemd unit of the KMS proxy" },
    { name = "proxy_metrics", type = "string", default = "http://127.0.0.1:9108/metrics", help = "the KMS proxy's /metrics URL" },
    { name = "max_skew", type = "number", default = 60, help = "seconds of clock skew tolerated (SigV4 fails past 300)" },
  },
  deadline = 60,
  steps = {
    -- the host's own checks, shared with diag10, then KMS readiness (lua/nd/checks.lua)
    { name = "device and group", timeout = 5, run = checks.device },
    { name = "allocator", timeout = 20, run = checks.allocator },
    { name = "artifacts path (E51)", timeout = 5, run = checks.artifacts_env },
    { name = "enclaves", timeout = 30, run = checks.running_enclaves },
    { name = "IMDSv2 and role", timeout = 15, run = checks.imds_role },
    { name = "clock", timeout = 10, run = checks.clock },
    { name = "KMS proxy", timeout = 15, run = checks.kms_proxy },
    { name = "vsock-proxy allowlist", timeout = 5, run = checks.vsock_allowlist },
  },
}
