-- The padded-EIF PCR cache (sim/nitro_cli.lua, docs/simulator.md) lives where NITRODIAG_CACHE_DIR says; ctest sets
-- it to a directory of the build tree for every test (tests/test-env.cmake), so no test writes the user's home.
local H = dofile(spec.source_dir .. "/tests/sim/helpers.lua")
local fs = require "nd.fs"

after_each(H.close_all)

local function listing(dir)
  local t = {}
  for _, f in ipairs(fs.list(dir) or {}) do t[f] = true end
  return t
end

describe("the simulator's cache under ctest", function()
  it("NITRODIAG_CACHE_DIR is a directory of the build tree", function()
    local dir = os.getenv("NITRODIAG_CACHE_DIR")
    local bin = os.getenv("ND_BINARY_DIR")
    truthy(dir and bin, "ctest sets both")
    eq(dir:sub(1, #bin + 1), bin .. "/")
  end)
  it("a padded scenario EIF's PCRs go there, not to ~/.cache", function()
    local cache = os.getenv("NITRODIAG_CACHE_DIR") .. "/sim-eif-pcrs"
    local home = (os.getenv("HOME") or "/nonexistent") .. "/.cache/nitrodiag/sim-eif-pcrs"
    local before_home = listing(home)
    H.activate("e26-small-memory") -- writes data-processing.eif padded to 537 MiB
    local n = 0
    for f in pairs(listing(cache)) do
      if f:match("^%x+%.json$") then n = n + 1 end
    end
    truthy(n >= 1, "a PCR record in " .. cache)
    for f in pairs(listing(home)) do truthy(before_home[f], "written to the home cache: " .. f) end
  end)
end)
