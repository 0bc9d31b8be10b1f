"""IPv6 router advertisements on the DHCP interfaces (RFC 4861 §6): codec, timing, transport.

Their job is to tell a booting client at once that there is no IPv6 router on this link (router
lifetime 0), so iPXE and Linux stop soliciting instead of waiting ~16 s for an answer.
"""
