x = 1
application = undefined_name
