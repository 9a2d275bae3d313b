-- nd.rules.console — causes in an enclave's console (nitro-cli console / --attach-console): the AWS bootstrap
-- init's lines, kernel panics, the immediate reboot of an image whose command never ran.
local function name(f) return f.host.name or "enclave" end

return { area = "console", rules = {
  { id = "init-env-oom", finding = "ENCLAVE_INIT_OUT_OF_MEMORY", confidence = 0.95,
    match = function(f)
      local l = f:line("Could not open /env") or f:line("Could not open /cmd")
      if l then return { vars = { name = name(f) }, evidence = { l, f:line("Kernel panic") } } end
    end },
  { id = "cmd-not-found", finding = "ENCLAVE_CMD_NOT_FOUND", confidence = 0.9,
    match = function(f)
      local l, prog = f:line("^/bin/sh: ([^:]+): not found")
      if not l then l, prog = f:line("exec: \"?([^\":]+)\"?: executable file not found") end
      if not l then l, prog = f:line("[Cc]ould not execute ([^:]+): No such file") end
      if l then return { vars = { detail = prog }, evidence = { l } } end
    end },
  { id = "cmd-relative-path", finding = "ENCLAVE_CMD_NOT_FOUND", confidence = 0.75,
    match = function(f)
      -- a Dockerfile pasted with the output: CMD/ENTRYPOINT running a program or script by a relative path
      local l = f:line('^%s*CMD%s*%[.-"%.%.?/') or f:line('^%s*ENTRYPOINT%s*%[.-"%.%.?/')
        or (f:line("^%s*WORKDIR") and (f:line('^%s*CMD%s*%[%s*"[^"/]+"%s*,%s*"[^"/][^"]*/') ))
      if l then return { vars = { detail = "a relative path in " .. l:gsub("^%s+", "") }, evidence = { l } } end
    end },
  { id = "hangup-after-start", finding = "ENCLAVE_EXITED_AFTER_START", confidence = 0.7,
    match = function(f)
      local l = f:line("Received hang%-up event from the enclave")
      if l and (f:has("Started enclave") or f:has("EnclaveID") or f:has("describe-enclaves")) then
        return { evidence = { f:line("Started enclave"), l, f:line("^%s*%*?%*?Result =%*?%*? %[%]") } }
      end
    end },
  { id = "kernel-panic", finding = "ENCLAVE_PANIC", confidence = 0.7,
    match = function(f)
      local l = f:line("Kernel panic[^\n]*")
      if l then return { vars = { name = name(f), detail = l:match("(Kernel panic.*)$") }, evidence = { l } } end
    end },
  { id = "app-failed-reboot", finding = "ENCLAVE_APP_CRASHED", confidence = 0.75,
    match = function(f)
      if not f:has("reboot: Restarting system") then return nil end
      -- the application's own words on the console, not nitro-cli's `[ Exx ]` block printed after the console
      local l
      for _, x in ipairs(f.lines) do
        if not f:cli_line(x) and
           (x:find("[Ee]rror[:%s]") or x:find("panicked at") or x:find("[Tt]raceback") or x:find("not found")
            or x:find("No such file or directory")) then l = x break end
      end
      if l and not f:has("Could not open /env") then
        return { vars = { detail = l:sub(1, 160) }, evidence = { l, "reboot: Restarting system" } }
      end
    end },
  { id = "reboot-no-init", finding = "ENCLAVE_REBOOT_NO_INIT", confidence = 0.65,
    match = function(f)
      if f:has("reboot: Restarting system") and not f:has("[init]") then
        return { vars = { name = name(f) }, evidence = { "console: reboot: Restarting system, with no [init] line before it" } }
      end
    end },
} }
