-- nd.console — what an enclave's console log says about its life, in one place for diag10 and triage: did the
-- AWS bootstrap hand over to the image's command (`[init] starting`), did the enclave reboot at once (the
-- CMD-replaces-ENTRYPOINT / `/bin/sh -c` trap), did the kernel panic (too little memory to unpack the image), did
-- vsock-pingpong say it listens.
local json = require "nd.json"

local M = {}

M.REBOOT_RULE = "Nitro runs only CMD when an image has one (ENTRYPOINT is then ignored), and a `/bin/sh -c` " ..
  "command fails in an image without a shell: remove CMD, use an exec-form ENTRYPOINT [\"/init\"] and pass the mode " ..
  "through ENV (check with `nitrodiag image-lint <Dockerfile>`)"

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
    listening = has(text, "listening on port"),
    mode = text:match("%[enclave%] mode=(%w+)"),
    smoke = has(text, "[busybox-smoke] alive"),
  }
  local findings = {}
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
    findings[#findings + 1] = { code = "ENCLAVE_REBOOT_NO_INIT", severity = "fail",
      message = name .. ": the enclave rebooted at once without running the image's command",
      evidence = ev, remediation = M.REBOOT_RULE }
  elseif facts.panic then
    verdict = "panic"
    local env_fail = has(text, "Could not open /env")
    findings[#findings + 1] = { code = "ENCLAVE_PANIC", severity = "fail",
      message = name .. ": the enclave kernel panicked" ..
        (env_fail and " after `Could not open /env file`: too little memory to unpack the image" or ""),
      evidence = { facts.panic },
      remediation = "give the enclave more memory (at least 4 × the EIF size; `nitrodiag eif <file>` shows it)" }
  elseif not facts.init and opts.expect_init ~= false then
    verdict = "no-init"
    findings[#findings + 1] = { code = "ENCLAVE_NO_INIT", severity = "warn",
      message = name .. ": no `[init] starting` line on the console",
      evidence = { lines[#lines] }, remediation = "check that the image's ENTRYPOINT is [\"/init\"] and that it has no CMD" }
  end
  if facts.exited and verdict == "ok" then
    findings[#findings + 1] = { code = "ENCLAVE_APP_EXITED", severity = "warn", message = name .. ": " .. facts.exited,
      evidence = { "[init] " .. facts.exited }, remediation = "the application ended; its console lines before this say why" }
  end
  return { verdict = verdict, facts = facts, findings = findings }
end

-- looks_like(text) -> true when text reads like an enclave console log
function M.looks_like(text)
  return has(text, "[init]") or has(text, "reboot: Restarting system") or has(text, "Kernel panic") or
         has(text, "[enclave]") or text:find("%[%s*%d+%.%d+%]%s") ~= nil
end

return M
