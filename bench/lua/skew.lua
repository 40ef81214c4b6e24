-- One request in 20 asks for /slow (50 ms of CPU on the server), the rest for /.
local n = 0
request = function()
  n = n + 1
  if n % 20 == 0 then
    return wrk.format("GET", "/slow")
  end
  return wrk.format("GET", "/")
end
