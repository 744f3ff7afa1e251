// DroneCTLCommands: the `dronectl` commands generated from proto/ (see Generated/, made by
// `make proto`: protoc-gen-swiftpbc with the `CLI` option). Nothing here is written by hand.
