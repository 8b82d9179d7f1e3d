"""Loopback fakes of what PowerDesk talks to but tests and benchmarks cannot reach: the WeChat
API, the Aliyun and Tencent SMS APIs, Rasa's REST contract, and a client speaking the
rasa-webchat protocol. Never of our own code."""
