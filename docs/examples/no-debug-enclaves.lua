-- no-debug-enclaves: production enclaves must not run in debug mode. A debug-mode enclave has all-zero PCRs in its
-- attestation documents, so KMS key policies that test kms:RecipientAttestation:PCR* refuse it — and its console is
-- readable from the parent. This is the worked example of docs/runbooks.md.
local nitro = require "nd.nitro"

return {
  description = "Fail when an enclave runs in debug mode (zero PCRs: KMS attestation conditions refuse it)",
  categories = { "policy" },
  args = {
    { name = "allow", type = "list", default = "", help = "enclave names allowed to run in debug mode" },
  },
  deadline = 30,
  steps = {
    { name = "list enclaves", timeout = 20, required = true,
      run = function(s)
        local list, err = nitro.describe_enclaves()
        if not list then s:fail("describe-enclaves failed: " .. err) return end
        s.data.enclaves = list
        s:ok(#list .. " enclave(s) running")
      end },
    { name = "debug mode", timeout = 5,
      run = function(s)
        local allowed = {}
        for _, name in ipairs(s.args.allow) do allowed[name] = true end
        local bad = {}
        for _, e in ipairs(s.data.enclaves) do
          if e.Flags == "DEBUG_MODE" and not allowed[e.EnclaveName] then
            bad[#bad + 1] = string.format("%s (%s, CID %d)", e.EnclaveID, e.EnclaveName, e.EnclaveCID)
          end
        end
        if #bad == 0 then s:ok("no enclave in debug mode") return end
        s:finding{ code = "DEBUG_ENCLAVE", severity = "fail",
                   message = #bad .. " enclave(s) run in debug mode: their PCRs are zero, so KMS refuses them",
                   evidence = bad,
                   remediation = "run them without --debug-mode (or allow=NAME for a test enclave)" }
      end },
  },
}
