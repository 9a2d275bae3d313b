-- nd.console — what an enclave's console log says about its life, in one place for diag10 and triage: did the
-- AWS bootstrap hand over to the image's command (`[init] starting`), did the enclave reboot at once (the
-- CMD-replaces-ENTRYPOINT / `/bin/sh -c` trap), did the kernel panic (too little memory to unpack the image), did
-- vsock-pingpong say it listens.
local json = require "nd.json"
local findings = require "nd.findings"

local M = {}

-- The finding texts are the registry's (nd.findings); this module decides which cause the console shows.
M.REBOOT_RULE = findings.get("ENCLAVE_REBOOT_NO_INIT").remediation[1]

local function has(text, s) return text:find(s, 1, true) ~= nil end

-- analyse(lines, opts) -> { verdict, facts, findings }. lines: the console lines; opts.name labels the findings;
-- opts.inspect: the image's docker inspect Config (Entrypoint/Cmd) as evidence; opts.expect_init (default true).
-- verdict: "ok" | "rebooted" | "panic" | "no-init" | "silent".
function M.analyse(lines, opts)
  opts = opts or {}
  local name = opts.name or "enclave"
  local text = table.concat(lines, "\n")
  local facts = {
    init = has(text, "[init] starting"),
    launched = text:match("%[init%] launching ([^\n]+)"),
    exited = text:match("%[init%] ([^\n]* exited [^\n]+)"),
    rebooted = has(text, "reboot: Restarting system"),
    panic = text:match("[^\n]*Kernel panic[^\n]*"),
    listening = has(text, "listening on port") or has(text, "listening on vsock:"), -- stand-in / real vsock-pingpong
    mode = text:match("%[enclave%] mode=(%w+)"),
    smoke = has(text, "[busybox-smoke] alive"),
  }
  local out = {}
  local verdict = "ok"
  if #lines == 0 then
    verdict = "silent"
  elseif facts.rebooted and not facts.init then
    verdict = "rebooted"
    local ev = { "console: reboot: Restarting system, with no [init] line before it" }
    if opts.inspect then
      ev[#ev + 1] = "docker inspect: Entrypoint=" .. json.encode(opts.inspect.Entrypoint or json.null) ..
                    " Cmd=" .. json.encode(opts.inspect.Cmd or json.null)
    end
    out[#out + 1] = findings.make("ENCLAVE_REBOOT_NO_INIT", { name = name }, ev)
  elseif facts.panic then
    verdict = "panic"
    if has(text, "Could not open /env") then
      out[#out + 1] = findings.make("ENCLAVE_INIT_OUT_OF_MEMORY", { name = name }, { "Could not open /env file", facts.panic })
    else
      out[#out + 1] = findings.make("ENCLAVE_PANIC", { name = name, detail = facts.panic }, { facts.panic })
    end
  elseif not facts.init and opts.expect_init ~= false then
    verdict = "no-init"
    out[#out + 1] = findings.make("ENCLAVE_NO_INIT", { name = name }, { lines[#lines] })
  end
  if facts.exited and verdict == "ok" then
    out[#out + 1] = findings.make("ENCLAVE_APP_EXITED", { name = name, detail = facts.exited }, { "[init] " .. facts.exited })
  end
  return { verdict = verdict, facts = facts, findings = out }
end

-- looks_like(text) -> true when text reads like an enclave console log
function M.looks_like(text)
  return has(text, "[init]") or has(text, "reboot: Restarting system") or has(text, "Kernel panic") or
         has(text, "[enclave]") or text:find("%[%s*%d+%.%d+%]%s") ~= nil
end

return M
