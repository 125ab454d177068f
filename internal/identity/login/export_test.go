package login

// MaxFlows is maxFlows, for the test of how many sign-ins a browser holds.
const MaxFlows = maxFlows
