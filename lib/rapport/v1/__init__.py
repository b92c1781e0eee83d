"""Generated from protos/rapport/v1. Do not edit."""
