"""Alipay mini program and 生活号 channel (app gateway)."""
