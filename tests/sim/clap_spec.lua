-- The simulated nitro-cli's command line against real clap: tests/fixtures/nitro-cli-source/clap.lua (1.5.0, clap
-- 4.5.51) and clap-1.4.2.lua (clap 4.4.18) hold what clap prints for nitro-cli's own create_app! definitions, for
-- each argv of clap-oracle/cases.txt (clap-oracle/gen.sh builds clap from source; nothing here comes from the
-- simulator). Every help text, --version, usage error and parse result must be the same, byte for byte.
local H = dofile(spec.source_dir .. "/tests/sim/helpers.lua")
local clap = require "nd.sim.clap"

after_each(H.close_all)

local function cases(file)
  local out = {}
  for _, e in ipairs(dofile(spec.source_dir .. "/tests/fixtures/nitro-cli-source/" .. file)) do
    local argv = {}
    for w in (e[1] .. "\t"):gmatch("([^\t]*)\t") do argv[#argv + 1] = w end
    out[#out + 1] = { argv = argv, stream = e[2], exit = e[3], text = e[4], line = e[1]:gsub("\t", " ") }
  end
  return out
end

for _, f in ipairs({ { "clap.lua", "1.5.0" }, { "clap-1.4.2.lua", "1.4.2" } }) do
  describe("nd.sim.clap = clap for nitro-cli " .. f[2], function()
    it("prints what clap prints for every case of " .. f[1], function()
      local all = cases(f[1])
      truthy(#all >= 100, "the oracle has its cases")
      local bad = {}
      for _, c in ipairs(all) do
        local r = clap.parse({ table.unpack(c.argv, 2) }, f[2])
        local ok
        if c.stream == "none" then ok = r.sub == c.argv[2] and r.text == nil
        else ok = r.text == c.text and r.stream == c.stream and r.exit == c.exit end
        if not ok then
          bad[#bad + 1] = string.format("%s\n--- clap (%s %d):\n%s--- sim (%s %s):\n%s", c.line, c.stream, c.exit, c.text,
            tostring(r.stream), tostring(r.exit), tostring(r.text or ("parsed: " .. tostring(r.sub))))
        end
      end
      eq(table.concat(bad, "\n"), "")
    end)
  end)
end

describe("the simulated host's nitro-cli binary", function()
  it("writes clap's texts to clap's stream with clap's exit status (1.4.2, the scenarios' version)", function()
    H.activate("healthy")
    local n = 0
    for _, c in ipairs(cases("clap-1.4.2.lua")) do
      if c.stream ~= "none" then
        local r = H.run(c.argv)
        eq(r.exit_code, c.exit, c.line)
        eq(c.stream == "stdout" and r.stdout or r.stderr, c.text, c.line)
        eq(c.stream == "stdout" and r.stderr or r.stdout, "", c.line)
        n = n + 1
      end
    end
    truthy(n > 80)
  end)
  it("parses what clap accepts into the options the commands read", function()
    local r = clap.parse({ "run-enclave", "--cpu-ids", "1", "3", "--memory=512M", "--eif-path", "x.eif", "--attach-console" })
    eq(r.sub, "run-enclave")
    eq(r.opts["cpu-ids"], { "1", "3" })
    eq(r.opts.memory, "512M")
    eq(r.opts["eif-path"], "x.eif")
    eq(r.opts["attach-console"], true)
    eq(r.opts["debug-mode"], nil)
    r = clap.parse({ "build-enclave", "--docker-uri", "a:b", "--output-file", "o.eif", "--name", "n", "--version", "v" })
    eq(r.opts.image_name, "n")
    eq(r.opts.image_version, "v")
  end)
end)
