"""Facts every reply may state."""

# State Grid's 24-hour service hotline (供电服务热线).
HOTLINE = "95598"
