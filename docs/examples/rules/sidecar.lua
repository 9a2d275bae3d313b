-- An operator's rule file (docs/diagnosis.md): a site-specific cause, with its own finding code.
local findings = require "nd.findings"
findings.define{ code = "SITE_SIDECAR_DOWN", severity = "fail", title = "The secrets sidecar is not running",
  message = "the enclave app could not reach the secrets sidecar and exited",
  remediation = { "sudo systemctl restart site-sidecar.service", "then nitro-cli run-enclave … again" } }
return { area = "site", rules = {
  { id = "site-sidecar", finding = "SITE_SIDECAR_DOWN", confidence = 0.97,
    match = function(f)
      local l = f:line("sidecar: connection refused")
      if l then return { evidence = { l } } end
    end },
} }
