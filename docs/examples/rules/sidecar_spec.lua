-- nitrodiag spec docs/examples/rules/sidecar_spec.lua — tests the example rule file against a pasted console.
local diagnose = require "nd.diagnose"
assert(diagnose.add_rules(spec.source_dir .. "/docs/examples/rules/sidecar.lua"))
describe("sidecar rule", function()
  it("ranks first on the pasted console", function()
    local res = diagnose.run("[init] starting\nsidecar: connection refused\nreboot: Restarting system\n")
    eq(res.top.code, "SITE_SIDECAR_DOWN")
  end)
end)
