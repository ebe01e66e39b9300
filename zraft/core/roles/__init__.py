"""Role-specific rules of RaftCore, one mixin per concern (ra-style handle_<role>).

The mixins share RaftCore's attributes; they are split only to keep each file readable.
"""

FOLLOWER = "follower"
PRECANDIDATE = "precandidate"
CANDIDATE = "candidate"
LEADER = "leader"
