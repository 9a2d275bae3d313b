-- nd.rules.console — causes in an enclave's console (nitro-cli console / --attach-console): the AWS bootstrap
-- init's lines, kernel panics, the immediate reboot of an image whose command never ran.
local function name(f) return f.host.name or "enclave" end

return { area = "console", rules = {
  { id = "init-env-oom", finding = "ENCLAVE_INIT_OUT_OF_MEMORY", confidence = 0.95,
    match = function(f)
      local l = f:line("Could not open /env") or f:line("Could not open /cmd")
      if l then return { vars = { name = name(f) }, evidence = { l, f:line("Kernel panic") } } end
    end },
  { id = "kernel-panic", finding = "ENCLAVE_PANIC", confidence = 0.7,
    match = function(f)
      local l = f:line("Kernel panic[^\n]*")
      if l then return { vars = { name = name(f), detail = l:match("(Kernel panic.*)$") }, evidence = { l } } end
    end },
  { id = "app-failed-reboot", finding = "ENCLAVE_APP_CRASHED", confidence = 0.75,
    match = function(f)
      if not f:has("reboot: Restarting system") then return nil end
      local l = f:line("[Ee]rror[:%s]") or f:line("panicked at") or f:line("[Tt]raceback") or f:line("not found")
        or f:line("No such file or directory")
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
