"""(being written: issue 16)"""

NAV = ()
