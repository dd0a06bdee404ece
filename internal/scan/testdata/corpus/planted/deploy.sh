#!/bin/sh
export GITHUB_TOKEN=ghp_PJnjQSHxhJVsxSz89WTRvK8YxiRiX2SOhSGP
curl -X POST -d "token=xoxb-341249418786-5565661048021-v6hxtDgugvQxyhfkdlqsH4Bd" https://slack.com/api/chat.postMessage
