-- Shared helpers of the simulator specs: activate a scenario, run a simulated host command, compare with the seed.
local fs = require "nd.fs"
local H = {}

H.sim = require "nd.sim"

-- activate(name) -> sim; closed by H.close_all() (after_each)
local open = {}
function H.activate(name, opts)
  local s = assert(H.sim.activate(name, opts))
  open[#open + 1] = s
  return s
end

function H.close_all()
  for _, s in ipairs(open) do s:close() end
  open = {}
end

-- run(argv [, opts]) -> result of nd.proc.run (stdout, stderr, exit_code); the simulated host's bin is on PATH
function H.run(argv, opts)
  local a = {}
  for k, v in pairs(argv) do a[k] = v end
  for k, v in pairs(opts or {}) do a[k] = v end
  a.timeout = a.timeout or 30
  -- a shell is not a command of the simulated host (nd.proc refuses it under a simulated host): a test that drives
  -- the host through `sh -c`, as an operator would, lifts that guard for the one call; the stand-ins still come
  -- first on PATH
  local host = require "nd.host"
  local root, scale = host.sim()
  if root and a[1] == "sh" then
    host.set_sim(nil)
    local res = table.pack(pcall(spec.run, a))
    host.set_sim(root, scale)
    assert(res[1], res[2])
    return assert(res[2], res[3])
  end
  return assert(spec.run(a))
end

-- Replaces err-log timestamps by a fixed marker, so outputs compare "timestamps aside".
function H.untime(s)
  return (s:gsub("err%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d[%.%d]*%+00:00%.log", "err<TIME>.log"))
end

-- The seed output n (1: E26, 2: E27) of the Japanese workshop page, without the translator's "<-- … -->" lines:
-- from the nitro-core fixtures (copied verbatim from the seed) or the seed page itself.
local FIXTURES = { "seed_e26_run_enclave.txt", "seed_e27_run_enclave.txt" }
function H.seed_output(n)
  local text = fs.read(spec.source_dir .. "/tests/nitro/fixtures/" .. FIXTURES[n])
  if not text then
    local page = fs.read("/work/shared/seeds/001_d579bd54d5e1a637.txt")
    if not page then return nil end
    local i = 0
    for block in page:gmatch("<pre>\n(.-)</pre>") do
      i = i + 1
      if i == n then text = block break end
    end
  end
  local out = {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    if not line:match("^<%-%-") then out[#out + 1] = line end
  end
  return (table.concat(out, "\n"):gsub("%s+$", ""))
end

-- A string of nitro-cli's source (tests/fixtures/nitro-cli-source/strings.lua, v1.5.0): H.src("ioctl",
-- "NE_ERR_NO_CPUS_AVAIL_IN_POOL") -> text, "file:line"
local SRC
function H.src(kind, key)
  SRC = SRC or dofile(spec.source_dir .. "/tests/fixtures/nitro-cli-source/strings.lua")
  for _, e in ipairs(SRC) do
    if e[1] == kind and e[2] == key then return e[5], e[3] .. ":" .. e[4] end
  end
  error("no source string " .. kind .. "/" .. key, 2)
end

-- err-log files of the simulated host (names)
function H.err_logs(s)
  local out = {}
  for _, f in ipairs(fs.list(s.root .. "/var/log/nitro_enclaves") or {}) do
    if f:match("^err.*%.log$") then out[#out + 1] = f end
  end
  return out
end

return H
